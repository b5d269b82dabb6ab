"""Diagnostics of a model's knowledge keys (`recall diagnose`): what the weight editors' maths assumes of
them, measured on the user's model."""
