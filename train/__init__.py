"""absl training entry point of nnx-zoo: `python -m train --config configs/FAMILY.py:VARIANT --workdir DIR`."""
