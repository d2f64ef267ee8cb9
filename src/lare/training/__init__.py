"""Training: stage configs (`config`), what each stage trains (`stages`), the Accelerate loop (`loop.train_stage`),
atomic checkpoints (`checkpoint`) and the stage I–IV pipeline (`pipeline.run_pipeline`). Import from the modules."""
