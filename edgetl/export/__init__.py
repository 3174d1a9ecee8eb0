"""Keras -> deployable files: the target registry (:mod:`edgetl.export.targets`), the TFLite and
ONNX exporters (with the ONNX QDQ rewrite), verification against the Keras model, and the one
export -> verify -> stamp step every export goes through (:mod:`edgetl.export.run`)."""
