"""Admission on the registry's side: the scans every stored version passes before it is used.

The pipeline (static scan, then the behavioral scan with the model's own or an
inherited profile, in the sandbox) runs on the files the registry holds, never
on a client's say-so. It has no CLI or HTTP in it: the embedded CLI, the server
and (next) the scan workers call the same :func:`admit_model`.
"""

from registry.admission.files import materialized
from registry.admission.pipeline import AdmissionScans, admit_hf, admit_model, scan_stored

__all__ = ["AdmissionScans", "admit_hf", "admit_model", "materialized", "scan_stored"]
