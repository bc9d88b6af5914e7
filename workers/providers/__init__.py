"""Clients of the hosting providers' APIs (DigitalOcean, Supabase), with their retries.
"""
