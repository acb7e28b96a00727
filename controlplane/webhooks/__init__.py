"""Push webhooks from GitHub, GitLab and Gitea/Forgejo for linked Spaces (docs/webhooks.md).

providers: each forge's headers and signature; deliveries: what a delivery does and the log of them; linking:
a Space's link (URL, branch, credential, webhook secret) as the API and dashboard change and show it.
"""
