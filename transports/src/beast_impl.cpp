// The one translation unit that compiles Beast and Asio's SSL support (separate compilation).
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
