"""Running cells: the device, the training loop, evaluation, captured steps, the runner and job launchers."""
