"""Server plumbing shared by every service: config, errors, auth, storage, server bootstrap."""
