"""A small helpdesk on FastAPI and mailparity: agents connect their customers' Microsoft 365 and
Gmail mailboxes from the web, every new email becomes a ticket (one event each), and its
attachments are saved on disk as the email is processed. See README.md."""
