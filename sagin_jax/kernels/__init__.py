"""Device kernels: whole online passes as one Pallas program per seed (``kernels.online``)."""
