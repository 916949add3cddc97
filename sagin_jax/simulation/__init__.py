"""The online process: releases, node and link embedding, atomic commit, running metrics."""
