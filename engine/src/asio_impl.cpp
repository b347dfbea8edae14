// The one translation unit that compiles Asio (BOOST_ASIO_SEPARATE_COMPILATION is PUBLIC on engine).
#include <boost/asio/impl/src.hpp>
