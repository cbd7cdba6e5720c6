"""The MAISI v1 backbone (the MedDIFT method): :mod:`.networks` (the released architecture),
:mod:`.weights` (find, verify, load), :mod:`.download` (from the gated Hub repository) and
:mod:`.backbone` (volume in, diffusion features out)."""
