"""``bas-deploy``: one command over every job of the toolkit (``bas_deploy.cli``)."""
