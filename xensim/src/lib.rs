//! xensim: a simulated Xen 4.17 host.
