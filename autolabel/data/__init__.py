"""autolabel.data"""
