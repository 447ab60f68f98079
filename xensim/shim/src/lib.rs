//! C ABI of libxenctrl & co. over xensim.
