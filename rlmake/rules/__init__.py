"""From Rulesfile text to a plan: loading (rulesfile), rendering (templates), expansion
(expand) and the job graph's views (graph).

The only package that imports YAML, Jinja2 and networkx. A build whose stored plan
is still valid (plancache) never imports it; tests/test_import_fence.py holds that.
"""
