"""Training data, the training loop and the tuning strategies (full, PEFT adapters, distillation)."""
