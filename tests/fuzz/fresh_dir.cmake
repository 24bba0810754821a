# cmake -DDIRS=<path>[;<path>...] -P fresh_dir.cmake: leaves each DIR
# existing and empty.
if(NOT DIRS)
  message(FATAL_ERROR "fresh_dir.cmake: DIRS not set")
endif()
foreach(dir IN LISTS DIRS)
  file(REMOVE_RECURSE "${dir}")
  file(MAKE_DIRECTORY "${dir}")
endforeach()
