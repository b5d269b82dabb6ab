"""RECIPE (METHODS.md §1): continuous prompts from a trained knowledge model, with a learned sentinel.
backend.py: the backend; model.py: the knowledge model; files.py: its artifact files and prompts;
encoder.py: its key/query encoder for the store."""

from recall.backends.recipe.backend import PROMPTS_FILE, RecipeBackend, RecipeConfig

__all__ = ["PROMPTS_FILE", "RecipeBackend", "RecipeConfig"]
