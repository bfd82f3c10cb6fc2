"""Floor 3, the report: test predictions scored (`metrics`, `evaluate`), paired comparisons (`comparisons`),
statistics over seeds (`seed_stats`), the paper's tables (`paper_tables`, rendered by `render`, with the
published numbers of `paper`), figures and `summary.md`. House rule: nothing here imports torch (a test checks):
facts about networks (parameter counts) are recorded by the training job next to its outputs.
"""
