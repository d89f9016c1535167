"""The device side of PLADA (paper §3.3): verify a payload, gather its images from the local
reference pack, fine-tune and export a student, optional FAISS label expansion."""
