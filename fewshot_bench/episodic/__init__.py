"""The episodic protocol: class splits applied to a dataset, seeded episodes, tasks built on the device."""
