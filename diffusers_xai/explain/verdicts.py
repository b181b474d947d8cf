r"""Which explanation methods passed their checks: the measured verdicts of `bench/explain_faithfulness.py`.

The benchmark runs every candidate method of every modality through three checks on the bundled models (deletion
and insertion gains over random maps with 95% bootstrap CIs, cascading model randomisation, recovery of planted
ground truth) and stores the numbers in `verdicts.json` next to this module. Cards, the Space and the default method
lists read them from here, so a method that failed is shown failing with its numbers and kept off the defaults.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

__all__ = ["VERDICTS_PATH", "load_verdicts", "method_verdicts", "passing_methods", "verdict_table"]

VERDICTS_PATH = Path(__file__).with_name("verdicts.json")
_MODALITIES = ("image", "tabular", "timeseries")


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    if not Path(path).is_file():  # not benchmarked yet: no verdicts rather than made-up ones
        return {"command": None, "conditions": {}, "modalities": {}}
    with open(path) as f:
        return json.load(f)


def load_verdicts(path: str | Path | None = None) -> dict:
    """The stored benchmark report: `command`, `conditions` and per modality the per-method numbers."""
    return _load(str(path or VERDICTS_PATH))


def method_verdicts(modality: str, path: str | Path | None = None) -> dict[str, dict]:
    """Method name → its stored checks on `modality` (`"image"`, `"tabular"` or `"timeseries"`)."""
    if modality not in _MODALITIES:
        raise ValueError(f"`modality` must be one of {_MODALITIES}, got {modality!r}.")
    entry = load_verdicts(path)["modalities"].get(modality)
    return dict(entry["methods"]) if entry else {}


def passing_methods(modality: str, path: str | Path | None = None) -> tuple[str, ...]:
    """The methods that passed all three checks on `modality`, in benchmark order."""
    return tuple(m for m, v in method_verdicts(modality, path).items() if v.get("passed"))


MAGNITUDE_MARK = " (magnitude)"  # no "|": the cells sit in markdown tables
MAGNITUDE_NOTE = (
    "(magnitude): an unsigned map (saliency's |gradient|, attention) claims no direction, so its curves measure the "
    "size of the change from the input's score, |f − f(x)| (higher deletion / lower insertion AUC than random maps "
    "is better; gains > 0 are better than random either way)."
)


def ci_text(check: dict | None) -> str | None:
    """A bootstrap check's `mean [ci_low, ci_high]`, signed, 3 decimals; `None` when the check has no mean."""
    if not check or check.get("mean") is None:
        return None
    return f"{check['mean']:+.3f} [{check['ci_low']:+.3f}, {check['ci_high']:+.3f}]"


def method_checks(entry: dict) -> tuple[dict, dict, dict, str]:
    """
    One benchmarked method's `faithfulness`, `randomization` and `planted` checks (`{}` where absent) and the mark its
    deletion/insertion cells carry ([`MAGNITUDE_MARK`] when its curves used the magnitude protocol, else `""`).
    """
    faith = entry.get("faithfulness") or {}
    mark = MAGNITUDE_MARK if faith.get("protocol") == "magnitude" else ""
    return faith, entry.get("randomization") or {}, entry.get("planted") or {}, mark


def _ci_cell(check: dict | None) -> str:
    text = ci_text(check)
    return "–" if text is None else f"{'pass' if check.get('passed') else 'fail'}: {text}"


def verdict_rows(modality: str, methods=None, path: str | Path | None = None) -> list[dict]:
    """
    One row of strings per method (all benchmarked methods, or `methods` in that order; an unbenchmarked method gets
    "not benchmarked"): `method`, `deletion`, `insertion`, `randomization`, `planted`, `verdict`.
    """
    stored = method_verdicts(modality, path)
    rows = []
    for method in methods if methods is not None else stored:
        entry = stored.get(method)
        if entry is None:
            rows.append(dict.fromkeys(("deletion", "insertion", "randomization", "planted"), "–"))
            rows[-1].update(method=method, verdict="not benchmarked")
            continue
        if "error" in entry:
            rows.append(dict.fromkeys(("deletion", "insertion", "randomization", "planted"), "–"))
            rows[-1].update(method=method, verdict=f"fail ({entry['error'][:60]})")
            continue
        faith, rand, planted, mark = method_checks(entry)
        rho = rand.get("spearman_full")
        rows.append(
            {
                "method": method,
                "deletion": _ci_cell(faith.get("deletion_gain")) + mark,
                "insertion": _ci_cell(faith.get("insertion_gain")) + mark,
                "randomization": "–" if rho is None else f"{'pass' if rand.get('passed') else 'fail'}: {rho:.3f}",
                "planted": "–"
                if not planted
                else f"{'pass' if planted.get('passed') else 'fail'}: {planted['value']:.3f}",
                "verdict": "pass" if entry.get("passed") else "fail",
            }
        )
    return rows


def verdict_table(modality: str, methods=None, path: str | Path | None = None) -> str:
    """
    The verdicts of `modality` as a markdown table (pass/fail per check, numbers, 95% CIs), followed by the command
    and conditions it was measured with.
    """
    report = load_verdicts(path)
    entry = report["modalities"].get(modality)
    if not entry:
        return f"No benchmarked verdicts for the {modality} modality."
    lines = [
        "| method | deletion gain [95% CI] | insertion gain [95% CI] | randomisation Spearman (full, < 0.5) | planted "
        "recovery (>= 0.8) | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in verdict_rows(modality, methods, path):
        lines.append(
            f"| {r['method']} | {r['deletion']} | {r['insertion']} | {r['randomization']} | {r['planted']} | "
            f"**{r['verdict']}** |"
        )
    settings = [
        f"{m}: " + ", ".join(f"{k}={v}" for k, v in v["settings"].items())
        for m, v in entry["methods"].items()
        if v.get("settings") and (methods is None or m in methods)
    ]
    if settings:
        lines += ["", "Settings: " + "; ".join(settings) + "."]
    c = entry.get("conditions", report["conditions"])
    if any(r["deletion"].endswith(MAGNITUDE_MARK) for r in verdict_rows(modality, methods, path)):
        lines += ["", MAGNITUDE_NOTE]
    lines += [
        "",
        f"Measured on `{entry['model']}`: {entry['samples']} generated samples × timesteps {entry['timesteps']} of "
        f"{entry['inference_steps']} DDIM steps, {c['n_random']} random maps, {c['n_boot']} bootstrap resamples; "
        f"planted ground truth on {c['planted_samples']} held-out samples per step "
        f"(`{entry.get('command', report['command'])}`).",
    ]
    return "\n".join(lines)
