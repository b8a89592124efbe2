"""What the notebooks show: parameterised queries over the landed tables (queries),
figures and the live widget (plots), and the status snapshot (monitor).
"""
