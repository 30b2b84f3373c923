"""N worker processes serving one port: placement, supervision, one admin port."""
