"""ipywidgets views of the lab: the same widgets in a JupyterLab cell and in the Voila dashboard."""
