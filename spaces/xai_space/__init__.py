"""The dashboard's tabs: `common` (shared), `images`, `tabular`, `timeseries`."""
