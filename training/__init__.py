"""HomographyNet training: data generation, models, training/evaluation/export CLIs."""
