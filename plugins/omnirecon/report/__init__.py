"""The daily drift report and the CSV/JSON exports of shared/contracts/outputs.md."""
