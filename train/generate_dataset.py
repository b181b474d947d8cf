"""Generate a sharded synthetic dataset from a saved diffusers-xai pipeline (same flags as `diffusers-xai generate`).

    python train/generate_dataset.py --pipeline outputs/digits/pipeline --num_samples 1000 --out synthetic-digits
    accelerate launch --config_file train/configs/accelerate/multi_cpu.yaml \\
        train/generate_dataset.py --pipeline outputs/digits/pipeline --num_samples 1000 --out synthetic-digits
"""

import sys

from diffusers_xai.commands.generate import main

if __name__ == "__main__":
    sys.exit(main())
