"""The NVML GPU agent: samples the node's GPUs, maps each to the Space using it, posts to the control plane."""
