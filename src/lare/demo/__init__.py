"""The main job: LaRe vs standard CoT vs direct answer on the embedded synthetic benchmark (`lare demo`)."""
