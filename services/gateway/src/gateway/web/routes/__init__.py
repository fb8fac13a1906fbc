"""Page routers: `public` (landing, sign-in, register), `panel` (customers), `admin` (staff)."""
