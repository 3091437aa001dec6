//! The XDP fast path: loader and the one map writer. Lands with the XDP issue.
