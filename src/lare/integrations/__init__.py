"""Adapters for other evaluation harnesses. Each module imports its harness, so import them only from there:
`lare.integrations.lmms_eval` (lmms-eval plugin `lare`) and `lare.integrations.vlmevalkit` (VLMEvalKit model)."""
