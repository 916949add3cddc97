"""Device kernels: whole online passes (``kernels.online``) and REINFORCE training batches
(``kernels.train``) as one Pallas program per seed."""
