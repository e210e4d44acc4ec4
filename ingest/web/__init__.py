"""The visual layer over the graph: ``neurflow serve`` (a local web explorer) and ``neurflow report``.

* :mod:`.views`: what each page shows, built only from named queries of ``queries/``;
* :mod:`.layout`: the concept circuit as a layered DAG, positions and curves computed here;
* :mod:`.media`: images of patches and images, only for files the graph names;
* :mod:`.render`: templates and links (live server or one self-contained file);
* :mod:`.app`: the Starlette application; :mod:`.report`: the single-file report.

Nothing here imports torch.
"""
