"""The run report: one self-contained HTML page with tables and plots of every stage."""
