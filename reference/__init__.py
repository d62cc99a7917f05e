"""The numpy reference GPT: the oracle for kernel outputs and for default hyperparameters."""
