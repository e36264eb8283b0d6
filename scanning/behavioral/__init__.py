"""Behavioral backdoor scanning: detectors, the sandbox that runs them, trigger replay.

Layout (pure of ``registry/``):

- :mod:`scanning.behavioral.report` — the value objects every part speaks
  (:class:`ScanProfile`, :class:`TriggerPattern`, :class:`DetectorResult`,
  :class:`BehavioralReport`, :class:`ReplayMeasure`, :class:`ReplayReport`).
- :mod:`scanning.behavioral.detect` — the detectors on an in-memory ``nn.Module``
  (``detect`` and ``measure_replay``); never loads files.
- :mod:`scanning.behavioral.profile`, ``loader``, ``sandbox``, ``worker``, ``api`` —
  reading reference ``.npz`` files, loading a model (only after the static scan
  passed) in a separate, limited process, and the public functions
  ``scan_model`` / ``replay_trigger`` the CLI and the registry call.
"""
