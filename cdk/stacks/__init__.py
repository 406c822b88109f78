"""Deployable units ("deploy with stacks"), one set per environment profile."""
