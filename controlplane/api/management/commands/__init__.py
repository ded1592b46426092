"""``manage.py create_api_token``: issue a token from the command line."""
