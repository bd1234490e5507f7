"""What is known before a run (light: reads config.json and safetensors headers, imports no ML library):
the model list, a model's shape from its files, the memory estimate, and the table of methods."""
