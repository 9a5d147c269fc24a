"""The Perilflow web UI: pages served by the plugin's FastAPI app under ``/perilflow/ui/``.

:mod:`.pages` holds the router (analyses list, analysis view, HTML report) and the HTML error
page; :mod:`.results` extracts and caches an analysis's results for them. The plugin's
``external_views`` entry (plugin.py) puts the list in Airflow's navigation as an iframe.
"""
