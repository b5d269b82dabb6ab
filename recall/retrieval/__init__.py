"""Query -> admitted hits: encoders, descriptors (keys), the gate, conflicts between edits."""
