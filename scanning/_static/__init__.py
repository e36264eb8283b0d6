"""Private implementation of the static scanner behind :mod:`scanning.static`.

Layering, bottom up: ``limits`` and ``context`` (configuration, budgets and the
findings sink), ``blobs`` (byte sources: files, archive members, decompressed
streams), ``detect`` (formats from their first bytes), ``policy`` (which imports
are safe), ``pickle_vm`` (the opcode reader and stack simulator), ``pickles``
(whole pickle streams: stacked, legacy torch, joblib), the format modules
(``numpy_format``, ``safetensors_format``, ``gguf_format``, ``onnx_format``,
``keras_format``, ``templates``), ``archives`` (zip, tar, 7z, compression) and
``dispatch``, which routes each blob and turns failures into ``error`` findings.
Format modules are imported on first use, keeping ``import scanning.static`` light.
"""
