"""Git LFS for Space repos: pointer files, the content-addressed object store, the batch API and the push check."""
