"""Template tag libraries shipped with ACE (``{% load acetags %}``)."""
