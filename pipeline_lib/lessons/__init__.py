"""Classroom drills and lessons: each shows one property of the pipeline on real services."""
