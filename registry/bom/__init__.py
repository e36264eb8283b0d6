"""Bills of materials: CycloneDX 1.6/1.7 ML-BOM export and import, SPDX 3.0.1 export.

Each function takes an open :class:`sqlmodel.Session` (one unit of work); the
CLI and the API are thin wrappers over them.
"""

from registry.bom.cyclonedx import export_cyclonedx
from registry.bom.importer import import_cyclonedx, import_cyclonedx_report
from registry.bom.spdx import export_spdx3

__all__ = ["export_cyclonedx", "export_spdx3", "import_cyclonedx", "import_cyclonedx_report"]
