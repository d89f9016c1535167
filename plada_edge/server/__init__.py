"""The server side of PLADA (paper §3): teacher training, ONNX export, energy scoring,
selection and the HTTP dataset server."""
