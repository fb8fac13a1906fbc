"""Shared service runtime: everything every service needs and nothing any one service owns."""
