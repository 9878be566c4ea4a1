"""The adapters: one module per backend behind one protocol (``base``) and one ``registry``.

Adapters import only ``xentbench.reference`` (the op names, dtypes and output shapes).
"""
