"""Planning a sweep before it runs, no Ray: what a trial reserves on the cluster (``resources``) and
what the whole sweep costs (``cost``)."""
